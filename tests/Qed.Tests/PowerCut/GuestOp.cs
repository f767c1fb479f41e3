namespace Qed.Tests.PowerCut;

/// <summary>What a guest request of a workload does.</summary>
internal enum GuestOpKind
{
    /// <summary>Writes <see cref="GuestPattern"/> bytes of the request's id.</summary>
    Write,
    /// <summary>Write-zeroes (zero clusters where whole clusters are covered).</summary>
    WriteZeroes,
    /// <summary>Flushes the image.</summary>
    Flush,
}

/// <summary>One guest request of a session and the log operations it issued, <c>[LogStart, LogEnd)</c>.</summary>
internal sealed record GuestOp(GuestOpKind Kind, long Offset, long Length, int Id)
{
    public int LogStart { get; init; }

    public int LogEnd { get; init; }

    public long End => Offset + Length;

    public bool ChangesData => Kind != GuestOpKind.Flush;

    public override string ToString() => Kind switch
    {
        GuestOpKind.Write => $"#{Id} write 0x{Offset:x}+0x{Length:x} (log {LogStart}..{LogEnd})",
        GuestOpKind.WriteZeroes => $"#{Id} zeroes 0x{Offset:x}+0x{Length:x} (log {LogStart}..{LogEnd})",
        _ => $"#{Id} flush (log {LogStart}..{LogEnd})",
    };
}
