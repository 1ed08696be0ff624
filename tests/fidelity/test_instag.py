"""InsTag against the InsTagger model card's prompt (OFA-Sys/InsTagger): Vicuna system
message, the tagging request, the query = instruction + "\n" + input; replies are JSON
lists of {"tag", "explanation"}. Expected strings written out by hand."""

from __future__ import annotations

from dslrun.operators.llm.instag import instag_messages, parse_tags


def test_prompt_is_the_model_cards():
    system, user = instag_messages({"instruction": "Translate to French.", "input": "good morning", "output": "x"})
    assert system["content"] == ("A chat between a curious user and an artificial intelligence assistant. The "
                                 "assistant gives helpful, detailed, and polite answers to the human's questions.")
    assert user["content"] == (
        "Please identify tags of user intentions in the following user query and provide an explanation for each "
        'tag. Please respond in the JSON format {"tag": str, "explanation": str}.\n'
        "User query: Translate to French.\ngood morning")


def test_reply_tags():
    reply = '[{"tag": "translation", "explanation": "e"}, {"tag": "French", "explanation": "f"}]'
    assert parse_tags(reply) == ["translation", "French"]
