"""ccfast: a call-center queue dispatcher for FreeSWITCH, compatible with mod_callcenter."""

__version__ = "0.1.0"
