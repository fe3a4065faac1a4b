"""The small toolkit the built-in stacks share: the contract server, codecs, handler loading."""
