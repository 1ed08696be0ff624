"""What the LLM-backed operators share: backend settings, prompt templates, reply parsers.

Nothing here imports ``openai`` or ``torch``; backends are made when a node runs.
"""
