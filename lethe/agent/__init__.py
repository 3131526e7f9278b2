"""SBU: an agent with persistent memory, and unlearning that covers both memory and parameters."""
