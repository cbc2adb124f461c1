"""Generators of the project's own data: the procedural MANO stand-in (`standin`), its
official-format writer (`mano_file`), the FreiHAND-format renderer (`freihand`, with
`geometry` and `appearance`) and the small fixture folder the tests and benchmarks use
(`fixture`). Nothing in manopth/, utils/, model/ or dataset/ imports this package."""
