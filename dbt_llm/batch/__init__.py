"""Batch APIs, provider-neutral: the lines of a job, waiting for it, matching results by custom_id, retries."""
