"""Sample data and the archive behind the sample server.

* :func:`generate` -- deterministic synthetic CT/MR instances;
* :class:`Archive` -- instances indexed for C-FIND / C-MOVE / C-GET;
* :mod:`dicomnet.samples.matching` -- the PS3.4 C.2.2.2 matching rules.
"""
from dicomnet.samples.archive import Archive, Entity
from dicomnet.samples.matching import CompiledQuery, compile_query
from dicomnet.samples.synthetic import generate

__all__ = ["Archive", "Entity", "CompiledQuery", "compile_query", "generate"]
