"""Camera vendors' own webhook formats mapped into contract envelopes (CONTRACT section 3).

Each format module is pure (parsed body in, `Mapped` envelopes out);
`deliver` stores their pictures and hands the envelopes to the pipeline.
"""
