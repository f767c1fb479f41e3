namespace Qed.CrashWriter;

/// <summary>Kinds of steps in a crash run.</summary>
public enum CrashOpKind
{
    /// <summary>Write deterministic bytes.</summary>
    Write,
    /// <summary>Write zeroes.</summary>
    WriteZeroes,
    /// <summary>Flush; once acknowledged, every earlier step must survive a crash.</summary>
    Flush,
}
