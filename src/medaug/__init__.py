"""medaug: teacher-LLM augmentation of medical QA and LoRA fine-tuning of small models."""

__version__ = "0.1.0"
