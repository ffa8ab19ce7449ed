"""Provider adapters: one package per provider, the shared transport, the sandbox and the simulator."""
