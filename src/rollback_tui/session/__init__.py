"""The application layer: the engine that owns every operator intent, the headless rehearsal, the policy.

It sits above the feeds (`probes/`) and the effects (`actions/`), and below the front ends (`ui/`, `cli`).
"""
