namespace Qed.Tests.Crash.Faults;

/// <summary>The fault a <see cref="FaultyFileAccessor"/> injects.</summary>
internal enum FaultKind
{
    /// <summary>Count only.</summary>
    None,

    /// <summary>The write fails and writes nothing.</summary>
    FailWrite,

    /// <summary>The first half of the write reaches the file, then it fails.</summary>
    TearWrite,

    /// <summary>The flush fails.</summary>
    FailFlush,
}
