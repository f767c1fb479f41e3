namespace Qed.IO;

/// <summary>Options of <see cref="BlockDevice.Write(ReadOnlyMemory{byte}, long, WriteFlags)"/>.</summary>
[Flags]
public enum WriteFlags
{
    /// <summary>A plain write: durable at the next flush.</summary>
    None = 0,

    /// <summary>Force unit access: the write completes only once its data (and what maps it) is durable, as if followed by a flush.</summary>
    ForceUnitAccess = 1 << 0,
}

/// <summary>Options of <see cref="BlockDevice.WriteZeroes(long, long, WriteZeroesFlags)"/>.</summary>
[Flags]
public enum WriteZeroesFlags
{
    /// <summary>The range reads as zeros and stays allocated where it was (later writes there cannot fail for lack of space, as QEMU keeps it).</summary>
    None = 0,

    /// <summary>The range reads as zeros and its space may be freed (a hole punched in the file).</summary>
    MayUnmap = 1 << 0,

    /// <summary>Force unit access: the call completes only once the zeros are durable.</summary>
    ForceUnitAccess = 1 << 1,
}
