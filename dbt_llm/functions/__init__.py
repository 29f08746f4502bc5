"""What to ask and how to check an answer: each function's spec, its JSON schema, prompts, grounding
and token estimates."""
