# cython: language_level=3
# The C-STORE-RSP encoder of dimse.pyx, for the C-STORE lane (lane.pyx).

cpdef object store_rsp_bytes(object message_id, object sop_class, object sop_instance, object status)
