"""What every line-based session needs against peers that send faster than they read.

- :mod:`.lines`: the received bytes, split into command lines by offset, with a bound
  on the line length;
- :mod:`.backpressure`: stop reading while the replies to a peer wait in its transport,
  and a cap on the commands handled in one turn of the reactor;
- :mod:`.limits`: connections per listener and per client address.

Used by the SMTP and POP3 servers alike.
"""
