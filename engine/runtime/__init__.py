"""What runs around the decision core: the input loop, the virtual clock, timers."""
