"""How to run the parts as services: the local stack (stack/), Docker files, screenshots."""
