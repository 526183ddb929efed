"""Survey configuration, invitations and counts. Only :mod:`server.feedback.service` uses
these tables; answers about a person are gateway records (``feedback_answer``).

- ``survey``: configuration (name, question, kind, anonymous or not). Names nobody.
- ``survey_invitation``: one per person invited, holding a keyed hash of the link's token
  (never the token), the person's subject id and, for CSAT, the case. Deleted when the
  link is used (so a token works once), when it expires, and when the person is erased.
- ``feedback_tally``: how many answers each score of each survey has. No person, no
  time: results are read from here, for anonymous and named answers alike, so an
  anonymous answer exists only as ``+1`` on a count.
- ``case_survey``: which closed cases were sent their CSAT question (at most once).
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Date, Integer, Timestamptz, Varchar
from piccolo.table import Table


class Survey(Table, tablename="survey"):
    id = UUID(primary_key=True)
    name = Varchar(length=100)
    question = Varchar(length=300)
    kind = Varchar(length=8)  # csat | nps
    anonymous = Boolean(default=False)
    campaign_id = UUID(null=True, default=None, index=True)  # NPS: the campaign that sends it
    created_at = Timestamptz()
    created_by = Varchar(length=64, default="")


class SurveyInvitation(Table, tablename="survey_invitation"):
    id = UUID(primary_key=True)
    token_hash = Varchar(length=64, unique=True)
    survey_id = UUID(index=True)
    subject_id = UUID(index=True)
    case_id = UUID(null=True, default=None)
    expires_at = Timestamptz(index=True)


class FeedbackTally(Table, tablename="feedback_tally"):
    id = UUID(primary_key=True)
    survey_id = UUID(index=True)
    score = Integer()
    answers = Integer(default=0)


class CaseSurvey(Table, tablename="case_survey"):
    id = UUID(primary_key=True)
    case_id = UUID(unique=True)
    sent_on = Date()  # the day, not the moment
