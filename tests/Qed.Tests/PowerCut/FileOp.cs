namespace Qed.Tests.PowerCut;

/// <summary>What one logged call did to the image file.</summary>
internal enum FileOpKind
{
    /// <summary><see cref="FileOp.Data"/> written at <see cref="FileOp.Offset"/>.</summary>
    Write,
    /// <summary>A flush that completed: everything logged before it is durable.</summary>
    Flush,
    /// <summary>The file length set to <see cref="FileOp.Length"/> (a truncate or an extension with a hole).</summary>
    SetLength,
}

/// <summary>One write, completed flush or length change of an image session, in the order the engine issued them.</summary>
internal sealed record FileOp(FileOpKind Kind, long Offset, byte[] Data, long Length)
{
    public static FileOp Write(long offset, ReadOnlySpan<byte> data) => new(FileOpKind.Write, offset, data.ToArray(), data.Length);

    public static FileOp Flush() => new(FileOpKind.Flush, 0, [], 0);

    public static FileOp SetLength(long length) => new(FileOpKind.SetLength, 0, [], length);

    /// <summary>First byte past the write.</summary>
    public long End => Offset + Data.Length;

    public override string ToString() => Kind switch
    {
        FileOpKind.Write => $"write {Data.Length} @ 0x{Offset:x}",
        FileOpKind.Flush => "flush",
        _ => $"set-length 0x{Length:x}",
    };
}
