"""Chat mode: for a model with a chat template, each prompt is the next user message.

The explorer keeps the conversation (the engine renders it with the model's template:
``Generate.messages``). A turn's reply is the assistant's message; the next prompt adds
it and a new user message. The template's own text (``<|im_start|>``, role names) is
shown dimmed around the user's words, so a person sees what the model sees. Undo past
the first token of a reply puts that user message back in the prompt for editing.
"""

from __future__ import annotations

from rich.text import Text

from minigpt.branches import common_length
from minigpt.host import protocol as p
from minigpt.text.tokenizer import printable

from .widgets import Transcript


def saved_messages(record: dict) -> tuple[dict, ...] | None:
    """A session record's conversation, when it holds a well-formed one."""
    from minigpt.errors import PromptError
    from minigpt.text.chat import check_messages

    try:
        return tuple(check_messages(record["messages"])) if record.get("messages") else None
    except PromptError:
        return None


def conversation_header(rendered: str, user: str, shown: str) -> Text:
    """The part of ``rendered`` past what the transcript already ``shown``: the template's
    text dimmed, the user's words bold and labelled, then the assistant's label."""
    at = rendered.rfind(user) if user else -1
    start = common_length(rendered, shown)
    if at >= 0:
        start = min(start, at)
    head, tail = (rendered[start:at], rendered[at + len(user):]) if at >= 0 \
        else (rendered[start:], "")
    if start and head.startswith("\n"):
        head = head[1:]  # the line the previous turn ended: each turn starts a line anyway
    header = Text()
    header.append(printable(head, keep="\n"), style="dim")
    header.append("user › ", style="bold cyan")
    header.append(printable(user, keep="\n"), style="bold")
    header.append(printable(tail, keep="\n"), style="dim")
    if not header.plain.endswith("\n"):
        header.append("\n")
    header.append("assistant › ", style="bold magenta")
    return header


def reply_of(steps) -> str:
    """A reply's text, without the special tokens that ended it."""
    return "".join(s.text for s in steps if not s.chosen.special)


def as_seen(text: str, special: bool) -> str:
    """A step's text as the model's input holds it: a special token shows as
    ``‹<|im_end|>›`` and is ``<|im_end|>`` there (an id without a name stays as shown)."""
    if special and text.startswith("‹") and text.endswith("›") and not text.startswith("‹id "):
        return text[1:-1]
    return text


def shown_reply(steps) -> str:
    """A reply as the transcript shows it, its end-of-turn token as the template writes
    it: the next turn's header starts after it (it showed the token a second time)."""
    return "".join(as_seen(s.text, s.chosen.special) for s in steps)


class ChatMixin:
    """For ``MiniGPTApp``; ``chat_requested``: True/False from --chat/--no-chat, None
    for the model's default (chat when it has a template)."""

    chat_requested: bool | None = None
    system_message: str | None = None
    editing_last = False  # undo went past a reply's start: the next prompt replaces it
    # The conversation text the transcript shows in full before the current turn, and
    # whether undo took the current turn off the screen (its successor starts from there).
    chat_before = ""
    turn_removed = False

    @property
    def chat_mode(self) -> bool:
        has_template = bool(self.info and self.info.chat)
        return has_template and self.chat_requested is not False

    def check_chat_request(self) -> str | None:
        """Once the model is up: --chat on a model without a template is one line."""
        if self.chat_requested and self.info is not None and not self.info.chat:
            return "this model has no chat template (--chat): prompts are raw text"
        return None

    def reply_text(self) -> str:
        """The current turn's reply as the next message's content."""
        return reply_of(self.history)

    def messages_for(self, text: str) -> tuple[dict, ...]:
        """The conversation a new user message ``text`` continues."""
        previous = self.turn.messages
        if previous and self.editing_last:
            base = list(previous[:-1])
        elif previous:
            base = [*previous, {"role": "assistant", "content": self.reply_text()}]
        else:
            base = [{"role": "system", "content": self.system_message}] \
                if self.system_message else []
        return (*base, {"role": "user", "content": text})

    def chat_fields(self, op_type, fields: dict) -> dict:
        """A new turn in chat mode carries the conversation (``submit`` calls this)."""
        if op_type is p.Generate and fields.get("prompt") is not None and self.chat_mode:
            fields = {**fields, "messages": self.messages_for(fields["prompt"])}
            self.editing_last = False
        return fields

    def chat_header(self, rendered: str, messages, previous, dropped: int = 0) -> Text:
        """The new part of the conversation: the template's text dimmed, the user's words
        bold and labelled, then the assistant's label where its reply streams. What the
        transcript already shows (earlier turns, their replies) is not shown again."""
        if self.turn_removed:  # an edited message: the turn it replaces left the screen
            shown = self.chat_before
        elif previous.messages:
            shown = previous.prompt + shown_reply(previous.steps)
        else:  # a reopened session's last turn follows its past turns on screen
            shown = self.past_shown(len(self.resumed) - 1) if self.resumable() else ""
        self.chat_before, self.turn_removed = shown, False
        if dropped and previous.messages:
            # Early messages left the rendering, so it no longer starts as the screen
            # does: what is new starts after the previous reply (or it all showed again).
            reply = shown_reply(previous.steps)
            at = rendered.rfind(reply) if reply else -1
            shown = rendered[:at + len(reply)] if at >= 0 else shown
        return conversation_header(rendered, messages[-1]["content"], shown)

    def past_header(self, index: int) -> Text | None:
        """A reopened session's chat turn ``index``, shown as it was live."""
        record = self.resumed[index]
        messages = saved_messages(record)
        if not messages:
            return None
        return conversation_header(record["prompt"], messages[-1]["content"],
                                   self.past_shown(index))

    def past_shown(self, index: int) -> str:
        """What the transcript shows of the conversation before reopened turn ``index``."""
        if index < 1 or not saved_messages(self.resumed[index - 1]):
            return ""
        record = self.resumed[index - 1]
        steps = record.get("steps") or ()
        return record["prompt"] + "".join(
            as_seen(str(s.get("text", "")), isinstance(c := s.get("chosen"), dict)
                    and bool(c.get("special"))) for s in steps if isinstance(s, dict))

    def replayed_messages(self, reply: p.TurnStarted):
        """A reopened session's chat turn: its saved conversation."""
        if reply.seq != self.replay_seq or not self.resumed:
            return None
        return saved_messages(self.resumed[-1])

    def undo_into_prompt(self) -> bool:
        """Undo with no reply token left: the user message goes back into the prompt. The
        focus stays where it was (in the prompt, the next ``u`` was typed into the
        message); the status line says where the message went."""
        if not self.turn.messages or self.history or self.running:
            return False
        if self.editing_last:
            self.set_status("nothing more to undo · your message is in the prompt (i edits "
                            "it, enter sends it in its place)")
            return True
        prompt = self.query_one("#prompt")
        prompt.value = self.turn.messages[-1]["content"]
        prompt.cursor_position = len(prompt.value)
        self.editing_last = True
        transcript = self.query_one(Transcript)
        if transcript.current is not None:
            transcript.current.remove()
        self.turn_removed = True
        self.preview = None  # the removed turn's candidates are no one's now
        self.refresh_candidates()
        self.set_status("your message is back in the prompt · i edits it, enter sends it in "
                        "its place")
        return True
