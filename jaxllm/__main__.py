from jaxllm.cli import run

run()
