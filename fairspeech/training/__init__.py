"""The training layer: one loop (:class:`Trainer`) for fairspeech's models and the user's, the model
protocol and objectives it trains under, the callbacks recipes plug in, and checkpoints.

Above the audit side (data, metrics, cohorts) and below every model package (asr, verification,
mitigation, updates): nothing here imports them.
"""

from fairspeech.training.callbacks import Callback, Regularizer
from fairspeech.training.protocol import ASROutput, CTCObjective, Seq2SeqObjective, Seq2SeqOutput, StepLoss, Weights, as_asr_output, move_to
from fairspeech.training.reweighting import AdversarialReweighter
from fairspeech.training.trainer import Trainer, TrainerConfig, learning_rate

__all__ = ["ASROutput", "AdversarialReweighter", "CTCObjective", "Callback", "Regularizer", "Seq2SeqObjective", "Seq2SeqOutput", "StepLoss",
           "Trainer", "TrainerConfig", "Weights", "as_asr_output", "learning_rate", "move_to"]
