"""The MoST model: MAMoE blocks in a transformers `PreTrainedModel`, grafting and the embedded base LM."""

from transformers import AutoConfig, AutoModelForCausalLM

from most.model.configuration import MoSTConfig
from most.model.modeling import MoSTForCausalLM

# `AutoModelForCausalLM.from_pretrained(folder)` finds our classes without trust_remote_code
AutoConfig.register("most", MoSTConfig, exist_ok=True)
AutoModelForCausalLM.register(MoSTConfig, MoSTForCausalLM, exist_ok=True)

__all__ = ["MoSTConfig", "MoSTForCausalLM"]
