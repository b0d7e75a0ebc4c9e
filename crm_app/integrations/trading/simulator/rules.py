"""MetaTrader account rules the simulator enforces the way a real server does.

Passwords (MT5 Web API reference, user/add and user/change_password):
- MT5, "classic": the rule in the reference's notes - at least two character types and the
  group's minimum length, never under 8; 16 characters at most.
- MT5, "strict": the rule the same pages state for current builds - lower case, upper case,
  digits and special characters, all four.
- MT4: 5 to 15 characters with at least two of lower case, upper case and digits.
A group picks its policy; the default is "classic".
"""

import string

SPECIALS = set(string.punctuation)
MT5_MIN_LENGTH, MT5_MAX_LENGTH = 8, 16
MT4_MIN_LENGTH, MT4_MAX_LENGTH = 5, 15
USER_COMMENT_LENGTH = 63  # 64 with the terminator; longer comments are cut
DEAL_COMMENT_LENGTH = 31  # 32 with the terminator
NAME_LENGTH = 127


def character_types(password):
    return {
        "lower": any(c.islower() for c in password),
        "upper": any(c.isupper() for c in password),
        "digit": any(c.isdigit() for c in password),
        "special": any(c in SPECIALS for c in password),
    }


def password_problem(password, platform="MT5", min_length=None, policy="classic"):
    """Why the server would refuse this password (retcode 3006), or None."""
    if not isinstance(password, str) or not password:
        return "a password is required"
    kinds = character_types(password)
    if platform == "MT4":
        shortest = max(MT4_MIN_LENGTH, min_length or 0)
        if not shortest <= len(password) <= MT4_MAX_LENGTH:
            return f"{shortest} to {MT4_MAX_LENGTH} characters"
        if sum(kinds[k] for k in ("lower", "upper", "digit")) < 2:
            return "at least two of lower case, upper case and digits"
        return None
    shortest = max(MT5_MIN_LENGTH, min_length or 0)
    if not shortest <= len(password) <= MT5_MAX_LENGTH:
        return f"{shortest} to {MT5_MAX_LENGTH} characters"
    if policy == "strict":
        if not all(kinds.values()):
            return "lower case, upper case, digits and special characters"
    elif sum(kinds.values()) < 2:
        return "at least two of lower case, upper case, digits and special characters"
    return None
