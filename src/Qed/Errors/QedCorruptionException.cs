namespace Qed;

/// <summary>A table entry met during I/O is invalid (points outside the file, inside the header or is unaligned).</summary>
/// <remarks>QEMU reports these as <c>Invalid argument</c>; a check with <see cref="Check.RepairMode.All"/> repairs them.</remarks>
public sealed class QedCorruptionException : QedException
{
    /// <summary>Creates the exception with a one-line message naming the table, the entry and its value.</summary>
    public QedCorruptionException(string message) : base(message) { }
}
