"""Real fine-tuning runs, kept tiny: the adapter changes answers, loads in both backends, and resumes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from promptrec.adapters.card import CARD_FILENAME, read_card
from promptrec.backends.transformers_backend import TransformersBackend
from promptrec.demo import DEMO_DATASET
from promptrec.errors import BackendError, RequestError
from promptrec.models import RankMode
from promptrec.prompting.builder import PromptBudget
from promptrec.prompting.templates import TemplateLibrary
from promptrec.training.command import run_finetune
from promptrec.training.examples import Objective, build_examples, leave_one_out_prefixes, shuffled
from promptrec.training.losses import ranking_loss
from promptrec.training.sources import load_training_source
from promptrec.training.trainer import LoraTrainer, TrainConfig
from tests.test_training_examples import write_tallrec

BUDGET = PromptBudget(max_history_items=2)
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def gold_logprob(backend: TransformersBackend, examples) -> float:
    """Mean log-probability of each example's gold answer among its answer labels (minus the loss)."""
    scores = torch.tensor(backend.next_token_logprobs([e.prompt for e in examples], list(examples[0].labels)))
    among_labels = torch.log_softmax(scores, dim=-1)
    return float(sum(among_labels[i, e.target] for i, e in enumerate(examples)) / len(examples))


def movielens_examples(formatter, count: int, objective: Objective = Objective.POINTWISE, **options):
    """The examples `promptrec finetune --samples count --max-history 2` trains on (same seed and order):
    two per prefix for pointwise, one group per prefix for ranking."""
    source = load_training_source(DEMO_DATASET, validation_users=0)
    prefixes = shuffled(leave_one_out_prefixes(source.sequences, per_user=1), 0)
    template = TemplateLibrary().get(None, RankMode.POINTWISE)
    withheld = frozenset(case.target_id for case in source.evaluation)
    return build_examples(
        prefixes[: count // 2 if objective is Objective.POINTWISE else count],
        source.sequences,
        source.catalog,
        template,
        formatter,
        BUDGET,
        objective=objective,
        withheld=withheld,
        **options,
    )


def tiny_finetune(model_dir: Path, dataset: Path, out: Path, **options: object) -> None:
    """`run_finetune` on 8 examples with 2-item histories and no validation: what the card tests need."""
    run_finetune(
        dataset,
        out,
        model=str(model_dir),
        samples=8,
        max_history=2,
        validation_users=0,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def trained(bundled_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter of the bundled model from `promptrec finetune`'s own code path: 2 steps, short prompts,
    LoRA on the attention and the MLP (so both backends are shown to apply either).

    (A first Adam step moves every LoRA weight by about lr, so lr 1e-3 overshoots on 8 examples; 1e-4 not.)
    """
    out = tmp_path_factory.mktemp("finetune") / "adapter"
    config = TrainConfig(lr=1e-4, batch_size=8, epochs=2, lora_dropout=0.0, target_modules=[*ATTENTION, *MLP])
    state = run_finetune(DEMO_DATASET, out, samples=8, max_history=2, validation_users=0, config=config)
    assert state.step == 2 and state.stopped == "completed"
    return out


@pytest.mark.integration
def test_training_raises_the_gold_answer_and_the_adapter_loads(
    bundled_model_dir: Path, trained: Path
) -> None:
    base = TransformersBackend(bundled_model_dir)
    examples = movielens_examples(base.formatter, 8)
    before = gold_logprob(base, examples)
    tuned = TransformersBackend(bundled_model_dir, adapter=trained)
    after = gold_logprob(tuned, examples)
    assert after > before + 0.01

    card = read_card(trained)
    assert card is not None and card.objective == "pointwise" and card.template == "pointwise_yesno"
    assert card.data["examples"] == 8 and card.data["evaluation_users_excluded"] > 100
    assert card.training["steps"] == 2 and card.training["tokens_per_second"] > 0
    assert sorted(card.training["target_modules"]) == sorted(ATTENTION + MLP)
    assert (trained / "curves.png").is_file()


def test_lora_modules_must_be_linear_layers_of_the_model(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        RequestError, match=r"--lora-modules: \['mlp', 'q_prj'\] are not linear layers.*gate_proj"
    ):
        tiny_finetune(
            tiny_llama_dir,
            DEMO_DATASET,
            tmp_path / "out",
            config=TrainConfig(max_steps=1, target_modules=["q_prj", "v_proj", "mlp"]),
        )
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.integration
def test_adapter_of_another_base_model_is_refused(tiny_llama_dir: Path, trained: Path) -> None:
    with pytest.raises(BackendError, match="was trained on base model 'smollm2-135m-instruct'"):
        TransformersBackend(tiny_llama_dir, adapter=trained)


def test_all_zero_or_empty_adapter_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, local_files_only=True)
    # PEFT's default initialisation sets every lora_B to zero: an untrained adapter that changes nothing.
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"])).save_pretrained(tmp_path / "zero")
    with pytest.raises(BackendError, match="all-zero weights"):
        TransformersBackend(tiny_llama_dir, adapter=tmp_path / "zero")
    (tmp_path / "zero" / "adapter_model.safetensors").unlink()
    with pytest.raises(BackendError, match="has no adapter_model.safetensors"):
        TransformersBackend(tiny_llama_dir, adapter=tmp_path / "zero")


def test_resume_continues_from_the_checkpoint_instead_of_restarting(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    def trainer(max_steps: int, lr: float = 1e-2) -> LoraTrainer:
        backend = TransformersBackend(tiny_llama_dir)
        config = TrainConfig(lr=lr, batch_size=4, epochs=3, max_steps=max_steps, checkpoint_every=1)
        return LoraTrainer(backend, config, BUDGET)

    examples = movielens_examples(TransformersBackend(tiny_llama_dir).formatter, 8)
    straight = trainer(4).fit(examples, None, tmp_path / "straight")

    first = trainer(2).fit(examples, None, tmp_path / "resumed")
    assert first.step == 2
    resumed = trainer(4).fit(examples, None, tmp_path / "resumed")
    assert resumed.step == 4 and len(resumed.losses) == 4
    assert [step for step, _ in resumed.losses] == [1, 2, 3, 4]
    torch.testing.assert_close(
        torch.tensor([loss for _, loss in resumed.losses]),
        torch.tensor([loss for _, loss in straight.losses]),
    )
    with pytest.raises(RequestError, match="other options"):
        trainer(6, lr=1e-3).fit(examples, None, tmp_path / "resumed")
    with pytest.raises(RequestError, match="trained on other examples"):  # e.g. another --samples
        trainer(6).fit(examples[:4], None, tmp_path / "resumed")
    assert (tmp_path / "resumed" / CARD_FILENAME).exists() is False  # cards come from `promptrec finetune`


def test_a_run_started_from_an_adapter_begins_where_that_adapter_ends(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    examples = movielens_examples(TransformersBackend(tiny_llama_dir).formatter, 8)
    prompts, labels = [e.prompt for e in examples], list(examples[0].labels)
    config = TrainConfig(lr=1e-2, batch_size=4, max_steps=2, lora_dropout=0.0)
    LoraTrainer(TransformersBackend(tiny_llama_dir), config, BUDGET).fit(examples, None, tmp_path / "first")
    first = TransformersBackend(tiny_llama_dir, adapter=tmp_path / "first").next_token_logprobs(
        prompts, labels
    )
    base = TransformersBackend(tiny_llama_dir).next_token_logprobs(prompts, labels)

    continued = LoraTrainer(
        TransformersBackend(tiny_llama_dir), config, BUDGET, start_from=tmp_path / "first"
    )
    continued.model.eval()
    start = torch.tensor(continued.backend.next_token_logprobs(prompts, labels))
    torch.testing.assert_close(start, torch.tensor(first))
    assert (start - torch.tensor(base)).abs().max() > 1e-3
    with pytest.raises(RequestError, match="LoRA shape differs.*'r': \\(8, 4\\)"):
        LoraTrainer(
            TransformersBackend(tiny_llama_dir),
            config.model_copy(update={"lora_r": 4}),
            BUDGET,
            start_from=tmp_path / "first",
        )


def test_the_card_of_a_continued_adapter_records_where_it_started(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    def finetune(out: str, **options: object) -> None:
        tiny_finetune(tiny_llama_dir, DEMO_DATASET, tmp_path / out, **options)

    finetune("first", config=TrainConfig(lr=1e-2, max_steps=1), command="promptrec finetune first")
    finetune("second", config=TrainConfig(lr=1e-3, max_steps=1), start_from=tmp_path / "first")
    first, second = read_card(tmp_path / "first"), read_card(tmp_path / "second")
    assert first is not None and second is not None
    started = second.training["started_from"]
    assert started["adapter"] == "first" and started["command"] == "promptrec finetune first"
    assert started["data"] == first.data and started["weights_sha256"] == second.training["start_from_sha256"]
    # Its step-0 validation scores the adapter it continues, not the base model, and says so.
    assert "validation_base_model" in first.metrics and "validation_base_model" not in second.metrics
    assert "validation_start_adapter" in second.metrics
    with pytest.raises(RequestError, match="trained with template 'pointwise_yesno'"):
        finetune(
            "listwise",
            config=TrainConfig(objective=Objective.LISTWISE, max_steps=1),
            start_from=tmp_path / "first",
        )
    # Ranking trains the same Yes/No prompts, so it may continue a pointwise adapter.
    finetune(
        "ranking",
        config=TrainConfig(objective=Objective.RANKING, batch_size=2, max_steps=1),
        start_from=tmp_path / "first",
    )
    ranked = read_card(tmp_path / "ranking")
    assert ranked is not None and (ranked.objective, ranked.mode) == ("ranking", "pointwise")
    assert ranked.training["started_from"]["adapter"] == "first"


def test_ranking_loss_is_a_softmax_over_yes_minus_no_margins_and_training_lowers_it(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    backend = TransformersBackend(tiny_llama_dir)
    groups = movielens_examples(backend.formatter, 4, Objective.RANKING, n_candidates=3)
    assert len(groups) == 4

    def served_loss(scorer: TransformersBackend) -> float:
        """The loss from the served scores: log P(yes) - log P(no) per prompt, the positive first."""
        margins = [
            [yes - no for yes, no in scorer.next_token_logprobs(list(group.prompts), list(group.labels))]
            for group in groups
        ]
        return float(
            torch.nn.functional.cross_entropy(torch.tensor(margins), torch.zeros(4, dtype=torch.long))
        )

    loss, tokens = ranking_loss(backend.model, backend.tokenizer, groups, torch.device("cpu"))
    assert loss.item() == pytest.approx(served_loss(backend), abs=1e-4)
    assert tokens == sum(len(backend.tokenizer(p)["input_ids"]) for g in groups for p in g.prompts)
    # Groups of different sizes in one batch: the loss is the mean of each group's own.
    short = replace(groups[0], prompts=groups[0].prompts[:2], candidate_ids=groups[0].candidate_ids[:2])
    cpu = torch.device("cpu")
    mixed, _ = ranking_loss(backend.model, backend.tokenizer, [short, groups[1]], cpu)
    alone = [
        ranking_loss(backend.model, backend.tokenizer, [group], cpu)[0].item() for group in (short, groups[1])
    ]
    assert mixed.item() == pytest.approx(sum(alone) / 2, abs=1e-4)

    config = TrainConfig(objective=Objective.RANKING, lr=1e-2, batch_size=4, epochs=3, lora_dropout=0.0)
    state = LoraTrainer(TransformersBackend(tiny_llama_dir), config, BUDGET).fit(
        groups, None, tmp_path / "out"
    )
    assert state.step == 3
    assert served_loss(TransformersBackend(tiny_llama_dir, adapter=tmp_path / "out")) < loss.item() - 0.05


class ScriptedValidation:
    """Validation scores given in advance, one per call: step 0 (the base), then each validated step."""

    description = "scripted"

    def __init__(self, scores: list[float]):
        self.scores = iter(scores)

    def score(self, recommender: object) -> float:
        return next(self.scores)


def test_a_trained_adapter_is_kept_even_when_the_base_scored_higher(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    backend = TransformersBackend(tiny_llama_dir)
    config = TrainConfig(lr=1e-2, batch_size=4, epochs=3, validate_every=1, patience=5)
    examples = movielens_examples(backend.formatter, 8)
    trainer = LoraTrainer(backend, config, BUDGET)
    state = trainer.fit(examples, ScriptedValidation([0.9, 0.4, 0.6, 0.5, 0.5, 0.5, 0.5]), tmp_path / "out")
    assert [step for step, _ in state.validations] == [0, 1, 2, 3, 4, 5, 6]
    assert state.best_step == 2 and state.best_metric == 0.6  # the base's 0.9 is a reference, not a candidate
    assert (tmp_path / "out" / "adapter_model.safetensors").exists()


@pytest.mark.vllm
def test_trained_adapter_scores_the_same_in_vllm(bundled_model_dir: Path, trained: Path) -> None:
    from promptrec.backends.vllm_backend import VLLMBackend

    transformers_backend = TransformersBackend(bundled_model_dir, adapter=trained)
    examples = movielens_examples(transformers_backend.formatter, 8)
    prompts, labels = [e.prompt for e in examples], list(examples[0].labels)
    expected = transformers_backend.next_token_logprobs(prompts, labels)
    engine = VLLMBackend(
        bundled_model_dir, dtype="float32", max_model_len=1024, max_lora_rank=8, adapter=trained
    )
    try:
        got = engine.next_token_logprobs(prompts, labels)
    finally:
        engine.close()
    for row, reference in zip(got, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(row, reference, strict=True)) < 0.01


def test_finetune_trains_on_tallrec_rows_and_validates_by_auc(
    tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(f"Liked film {i} (1995)", f"Target film {i} (2001)", i % 2 == 0) for i in range(10)]
    (tmp_path / "movie").mkdir()
    dataset = write_tallrec(tmp_path / "movie" / "valid.json", rows)
    config = TrainConfig(batch_size=4, max_steps=1)
    state = run_finetune(
        dataset, tmp_path / "out", model=str(tiny_llama_dir), samples=4, validation_users=4, config=config
    )
    assert state.step == 1 and [step for step, _ in state.validations] == [0, 1]
    assert all(0.0 <= auc <= 1.0 for _, auc in state.validations)
    log = capsys.readouterr().err
    assert re.search(
        r"4 examples \(\d answered yes\) from movie/valid.json TALLRec rows; 4 validation rows", log
    )
    assert "step 1: validation" in log and "AUC of log P(yes) - log P(no), 4 held-out TALLRec rows" in log


def test_hard_negatives_are_recorded_on_the_card_and_refused_for_yes_no_rows(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    def finetune(dataset: Path, out: str, hard_negatives: float) -> None:
        tiny_finetune(
            tiny_llama_dir,
            dataset,
            tmp_path / out,
            hard_negatives=hard_negatives,
            hard_negative_pool=30,
            config=TrainConfig(max_steps=1),
        )

    finetune(DEMO_DATASET, "random", 0.0)
    finetune(DEMO_DATASET, "hard", 0.5)
    random_card, hard_card = read_card(tmp_path / "random"), read_card(tmp_path / "hard")
    assert random_card is not None and hard_card is not None
    assert "hard_negatives" not in random_card.data
    assert hard_card.data["hard_negatives"] == {"retriever": "itemknn", "fraction": 0.5, "pool_size": 30}
    assert hard_card.data["examples_sha256"] != random_card.data["examples_sha256"]

    (tmp_path / "movie").mkdir()
    rows = write_tallrec(tmp_path / "movie" / "valid.json", [("Up (2009)", "Big (1988)", True)] * 4)
    with pytest.raises(RequestError, match="--hard-negatives needs an interaction log"):
        finetune(rows, "rows", 0.5)
