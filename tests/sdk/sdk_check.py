"""Calls the gateway with the official OpenAI and Anthropic Python SDKs.

Configured as a VM would be: a placeholder key, the integration as base URL.
The gateway is reached on GATEWAY (http://127.0.0.1:PORT) with the Host header
of the integration (HOST), since the test machine resolves no *.int names.
Prints one JSON object with what each call returned.
"""

import json
import os
import sys

import anthropic
import openai

gateway = os.environ["GATEWAY"]
host = os.environ["HOST"]
headers = {"Host": host}
out = {"openai_version": openai.__version__, "anthropic_version": anthropic.__version__}

oa = openai.OpenAI(api_key="implicit", base_url=f"{gateway}/v1", default_headers=headers, max_retries=0)
chat = oa.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
out["chat"] = chat.choices[0].message.content
stream = oa.chat.completions.create(
    model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.completion_tokens
out["chat_stream"] = "".join(parts)
out["chat_stream_usage"] = usage
tool = oa.chat.completions.create(
    model="gpt-5.5",
    messages=[{"role": "user", "content": "run it"}],
    tools=[{"type": "function", "function": {"name": "shell", "parameters": {"type": "object"}}}],
    extra_headers={"x-mock-tool": "shell"},
)
out["chat_tool"] = tool.choices[0].message.tool_calls[0].function.name
resp = oa.responses.create(model="gpt-5.5", input="hi")
out["responses"] = resp.output_text
with oa.responses.stream(model="gpt-5.5", input="hi") as s:
    final = s.get_final_response()
out["responses_stream"] = final.output_text
out["responses_stream_usage"] = final.usage.output_tokens
out["embedding_len"] = len(oa.embeddings.create(model="text-embedding-3-small", input="x").data[0].embedding)
out["openai_models"] = sorted(m.id for m in oa.models.list())

an = anthropic.Anthropic(api_key="implicit", base_url=gateway, default_headers=headers, max_retries=0)
msg = an.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
out["messages"] = msg.content[0].text
out["messages_usage"] = [msg.usage.input_tokens, msg.usage.output_tokens]
with an.messages.stream(model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
    out["messages_stream"] = s.get_final_text()
tool_msg = an.messages.create(
    model="claude-sonnet-4-6",
    max_tokens=64,
    messages=[{"role": "user", "content": "run it"}],
    tools=[{"name": "shell", "input_schema": {"type": "object"}}],
    extra_headers={"x-mock-tool": "shell"},
)
out["messages_tool"] = tool_msg.content[0].name
out["count_tokens"] = an.messages.count_tokens(
    model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
).input_tokens
out["anthropic_models"] = sorted(m.id for m in an.models.list())

# Across the API families (the gateway translates): the Anthropic SDK on a
# GPT model, the OpenAI SDK on a Claude model, streamed, with a tool call.
cross = {}
with an.messages.stream(model="gpt-5.5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
    cross["messages_stream_on_gpt"] = s.get_final_text()
    cross["messages_stream_on_gpt_stop"] = s.get_final_message().stop_reason
gzipped = an.messages.create(
    model="gpt-5.5", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
    extra_headers={"x-mock-encoding": "gzip"},
)
cross["messages_on_gpt_gzip"] = gzipped.content[0].text
tool_msg = an.messages.create(
    model="gpt-5.5",
    max_tokens=64,
    messages=[{"role": "user", "content": "run it"}],
    tools=[{"name": "shell", "input_schema": {"type": "object"}}],
    extra_headers={"x-mock-tool": "shell"},
)
cross["messages_tool_on_gpt"] = [tool_msg.content[0].name, tool_msg.content[0].input, tool_msg.stop_reason]
raw = an.messages.with_raw_response.count_tokens(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
cross["count_tokens_on_gpt"] = [raw.parse().input_tokens, raw.headers.get("llm-integration-estimate")]
stream = oa.chat.completions.create(
    model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage.completion_tokens
cross["chat_stream_on_claude"] = ["".join(parts), usage]
with oa.responses.stream(model="claude-sonnet-4-6", input="hi") as s:
    final = s.get_final_response()
cross["responses_stream_on_claude"] = [final.output_text, final.usage.output_tokens]
tool = oa.responses.create(
    model="claude-sonnet-4-6",
    input="run it",
    tools=[{"type": "function", "name": "shell", "parameters": {"type": "object"}}],
    extra_headers={"x-mock-tool": "shell"},
)
cross["responses_tool_on_claude"] = [tool.output[0].type, tool.output[0].name]
out["cross"] = cross

# Upstream framings the SDKs must survive through the gateway: CRLF or CR
# line ends, spaced JSON, a gzipped stream, no content type. The SDK's
# default chat stream (no stream_options) must never see the usage chunk
# the gateway asked for: `chunk.choices[0]` would raise IndexError.
framings = {
    "crlf": {"x-mock-framing": "crlf"},
    "cr": {"x-mock-framing": "cr"},
    "spaced": {"x-mock-spacing": "spaced"},
    "gzip": {"x-mock-encoding": "gzip"},
    "untyped": {"x-mock-content-type": "none"},
}
out["framings"] = {}
for name, knobs in framings.items():
    stream = oa.chat.completions.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}], stream=True, extra_headers=knobs
    )
    chat = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    with an.messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}], extra_headers=knobs
    ) as s:
        messages = s.get_final_text()
    out["framings"][name] = [chat, messages]
json.dump(out, sys.stdout)
