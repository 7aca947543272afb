"""Typed config: schema, YAML loading with base inheritance and overrides, validation."""

from jaxllm.config.load import dump_yaml, load_config, to_dict
from jaxllm.config.schema import Config

__all__ = ["Config", "load_config", "dump_yaml", "to_dict"]
