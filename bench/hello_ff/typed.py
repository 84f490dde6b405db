"""The benchmark's functions-framework typed function: `functions_framework.typed` with an input and an
output class (from_dict/to_dict). functions-framework serves typed functions only in its Flask mode, so
it is measured against `functions-framework` without `--asgi`. The probe's JSON body is the input."""

import functions_framework


class Message:
    def __init__(self, message: str) -> None:
        self.message = message

    @staticmethod
    def from_dict(obj: dict) -> "Message":
        return Message(obj["message"])

    def to_dict(self) -> dict:
        return {"message": self.message}


@functions_framework.typed(Message)
def hello(message: Message) -> Message:
    return Message(f"{message.message}, back")
