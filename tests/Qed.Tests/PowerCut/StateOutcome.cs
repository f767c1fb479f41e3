namespace Qed.Tests.PowerCut;

/// <summary>What checking one crash state saw (for the counts the test prints and asserts).</summary>
internal readonly record struct StateOutcome(bool NeedCheck, bool QemuCorrupt, bool Repaired, bool UnreadableReadOnly, bool PartialTail, bool ConfirmedByQemu, bool RefusalConfirmedByQemu);
