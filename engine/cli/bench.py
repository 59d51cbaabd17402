"""`p2phd bench`: not implemented yet."""

HELP = "(not implemented yet)"


def configure(parser):
    pass


def run(args):
    from p2phd.engine.errors import P2PHDError

    raise P2PHDError("'p2phd bench' is not implemented yet")
