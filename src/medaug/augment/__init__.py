"""Teacher-LLM generation strategies; prompts live in prompts/ as text files."""
