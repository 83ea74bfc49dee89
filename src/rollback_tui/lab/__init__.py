"""The embedded staging lab (DESIGN §3): replica.py (chat-API replica), balancer.py (label-selector
load balancer), bus.py (Redis: redis-server or embedded fakeredis), supervisor.py (`Lab`), faults.py,
proc.py (child processes that never outlive us). core/ and ui/ never import this package."""
