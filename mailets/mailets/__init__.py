"""Standard mailets: one concept per module.

A mailet's class docstring lists its parameters; unknown parameters are refused at
start-up. Mailets that move mails to other processors say which in
``required_processors()``.
"""
