namespace Qed.Check;

/// <summary>What a check (<see cref="Qed.Formats.ImageFormat.Check"/>) may repair.</summary>
public enum RepairMode
{
    /// <summary>Only count; change nothing on disk.</summary>
    None,
    /// <summary>Reclaim leaked clusters where that is safe (those at the end of the file).</summary>
    Leaks,
    /// <summary>Zero invalid L1 and L2 entries as QEMU does, and reclaim leaks as <see cref="Leaks"/> does.</summary>
    All,
}
