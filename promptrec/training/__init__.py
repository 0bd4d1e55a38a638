"""Fine-tuning: training examples through the serving prompt path, and a resumable LoRA trainer."""
