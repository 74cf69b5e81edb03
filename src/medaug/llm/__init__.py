"""Teacher LLMs: one interface, an OpenAI-compatible backend and a local transformers backend, one request cache."""
