"""The random walk against the model: steps, their execution, generation and shrinking."""
