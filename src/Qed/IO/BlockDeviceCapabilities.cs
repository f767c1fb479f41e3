namespace Qed.IO;

/// <summary>What a <see cref="BlockDevice"/> can do beyond reads, as a server would advertise it (NBD's transmission flags map onto these).</summary>
[Flags]
public enum BlockDeviceCapabilities
{
    /// <summary>Reads only.</summary>
    None = 0,

    /// <summary>Writes, write-zeroes, flush and force-unit-access writes are accepted.</summary>
    Write = 1 << 0,

    /// <summary>Write-zeroes is cheaper than writing zeros: it changes metadata or punches holes instead of writing data, at least for aligned ranges.</summary>
    ZeroFast = 1 << 1,

    /// <summary><see cref="BlockDevice.Discard"/> may free space (otherwise it is accepted and does nothing).</summary>
    Discard = 1 << 2,

    /// <summary><see cref="BlockDevice.Resize"/> can grow the device.</summary>
    Grow = 1 << 3,

    /// <summary><see cref="BlockDevice.Resize"/> can shrink the device.</summary>
    Shrink = 1 << 4,

    /// <summary><see cref="BlockDevice.GetStatus"/> tells allocated from unallocated ranges (a sparse format or file), rather than reporting everything as data.</summary>
    Extents = 1 << 5,
}
