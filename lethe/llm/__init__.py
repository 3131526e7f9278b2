"""Model backends: prompt formats, batched sampling, greedy answers, answer log-probs."""
