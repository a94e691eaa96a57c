"""cti-bridge: Asterisk AMI/FastAGI to Zammad Generic CTI."""

__version__ = "0.1.0"
