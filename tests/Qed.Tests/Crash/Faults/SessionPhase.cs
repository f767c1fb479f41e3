namespace Qed.Tests.Crash.Faults;

/// <summary>The part of an image session an I/O belongs to.</summary>
internal enum SessionPhase
{
    /// <summary>Opening: the auto-clear rewrite and the need-check repair.</summary>
    Open,

    /// <summary>The requests of the workload.</summary>
    Work,

    /// <summary>Closing: the final flush and the need-check clear.</summary>
    Close,
}
