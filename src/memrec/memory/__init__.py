"""The shared memory vocabulary (DESIGN.md): ``state`` (MemoryState), ``read`` (attention
reads and the copy read), ``retrieval`` (top-r retrieval over a long store), ``slots`` (learned
slots) and the writes, imported through the ``write`` façade and
living in ``fifo``, ``erase_add``, ``gated``, ``time_gated`` and ``unroll`` (one module per write, plus the
unroll they share)."""
