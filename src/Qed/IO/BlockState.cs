namespace Qed.IO;

/// <summary>What a range of a block device holds, as seen by that device alone.</summary>
public enum BlockState
{
    /// <summary>Data stored in this device (<see cref="BlockStatus.HostOffset"/> says where).</summary>
    Data,
    /// <summary>Reads as zeros without consulting any backing device (a QED zero cluster, a hole of a raw file).</summary>
    Zero,
    /// <summary>Not stored here: reads fall through to the backing device, or read as zeros when there is none.</summary>
    Unallocated,
}
