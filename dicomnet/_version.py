"""Version and the implementation identity sent in associations and File Meta."""

__version__ = "0.1.0.dev0"

#: Implementation Class UID (PS3.7 D.3.3.2): uuid5(DNS, "dicomnet.implementation") under 2.25 (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.323882889438267103391118832784097193565"
#: Implementation Version Name: up to 16 characters of the default repertoire.
IMPLEMENTATION_VERSION_NAME = "DICOMNET_010"
