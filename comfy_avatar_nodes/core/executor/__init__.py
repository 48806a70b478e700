"""Model-written Blender scripts: the sandbox that runs them (sandbox.py) and the repair loop
that sends failures back to the coder model (agent.py)."""
