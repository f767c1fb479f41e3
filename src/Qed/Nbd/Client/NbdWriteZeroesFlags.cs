namespace Qed.Nbd.Client;

/// <summary>Options of <see cref="NbdClient.WriteZeroesAsync"/>.</summary>
[Flags]
public enum NbdWriteZeroesFlags
{
    /// <summary>The server may punch a hole.</summary>
    None = 0,

    /// <summary>The range must stay allocated (<c>NBD_CMD_FLAG_NO_HOLE</c>).</summary>
    NoHole = 1 << 0,

    /// <summary>Fail with <c>ENOTSUP</c> rather than zero slowly (<c>NBD_CMD_FLAG_FAST_ZERO</c>; only where <see cref="NbdClient.CanFastZero"/>).</summary>
    FastZero = 1 << 1,

    /// <summary>Complete only once the zeros are durable (<c>NBD_CMD_FLAG_FUA</c>).</summary>
    ForceUnitAccess = 1 << 2,
}
