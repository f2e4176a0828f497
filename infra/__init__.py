"""How to run the parts as services: the local stack (stack.py), Docker files, screenshots."""
