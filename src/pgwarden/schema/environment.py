def init_environment(*a, **k): raise NotImplementedError
