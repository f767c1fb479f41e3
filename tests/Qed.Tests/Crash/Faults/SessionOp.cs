namespace Qed.Tests.Crash.Faults;

/// <summary>What one request of a scripted session does.</summary>
internal enum SessionOpKind
{
    Write,
    WriteZeroes,
    Flush,
}

/// <summary>One request of a scripted session: <paramref name="Data"/> is what the request makes the disk read as (zeros for write-zeroes, empty for a flush).</summary>
internal readonly record struct SessionOp(SessionOpKind Kind, long Offset, byte[] Data)
{
    public static SessionOp Write(long offset, byte[] data) => new(SessionOpKind.Write, offset, data);

    public static SessionOp WriteZeroes(long offset, int length) => new(SessionOpKind.WriteZeroes, offset, new byte[length]);

    public static SessionOp Flush() => new(SessionOpKind.Flush, 0, []);

    public override string ToString() => Kind == SessionOpKind.Flush ? "flush" : $"{Kind} of {Data.Length} bytes at 0x{Offset:x}";
}
