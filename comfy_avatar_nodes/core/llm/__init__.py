"""Language models: the one OpenAI-compatible client (client.py) and the stages built on it:
intent routing, requirements extraction and the script writer."""
