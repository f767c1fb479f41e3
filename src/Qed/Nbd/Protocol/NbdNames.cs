namespace Qed.Nbd.Protocol;

/// <summary>Names for messages, shared by the client and the server: error values (NBD.md 2.8: the protocol fixes Linux's errno numbering), commands and option replies.</summary>
internal static class NbdNames
{
    /// <summary>The errno name (<c>EIO</c>); unknown values are <c>error N</c> (clients treat them as <c>EINVAL</c>).</summary>
    public static string Name(uint error) => error switch
    {
        NbdError.Perm => "EPERM",
        NbdError.Io => "EIO",
        NbdError.NoMem => "ENOMEM",
        NbdError.Inval => "EINVAL",
        NbdError.NoSpc => "ENOSPC",
        NbdError.Overflow => "EOVERFLOW",
        NbdError.NotSup => "ENOTSUP",
        NbdError.Shutdown => "ESHUTDOWN",
        _ => $"error {error}",
    };

    /// <summary>The C library's text for the error (<c>Input/output error</c>), as qemu prints it.</summary>
    public static string Text(uint error) => error switch
    {
        NbdError.Perm => "Operation not permitted",
        NbdError.Io => "Input/output error",
        NbdError.NoMem => "Cannot allocate memory",
        NbdError.Inval => "Invalid argument",
        NbdError.NoSpc => "No space left on device",
        NbdError.Overflow => "Value too large for defined data type",
        NbdError.NotSup => "Operation not supported",
        NbdError.Shutdown => "Cannot send after transport endpoint shutdown",
        _ => "Unknown error",
    };

    /// <summary>The name of a command for messages.</summary>
    public static string Command(ushort command) => command switch
    {
        NbdCommand.Read => "READ",
        NbdCommand.Write => "WRITE",
        NbdCommand.Disc => "DISC",
        NbdCommand.Flush => "FLUSH",
        NbdCommand.Trim => "TRIM",
        NbdCommand.Cache => "CACHE",
        NbdCommand.WriteZeroes => "WRITE_ZEROES",
        NbdCommand.BlockStatus => "BLOCK_STATUS",
        _ => $"command {command}",
    };

    /// <summary>The name of an option reply type for messages (<c>ACK</c>, <c>ERR_UNKNOWN</c>).</summary>
    public static string OptionReply(uint replyType) => replyType switch
    {
        NbdOptionReply.Ack => "ACK",
        NbdOptionReply.Server => "SERVER",
        NbdOptionReply.Info => "INFO",
        NbdOptionReply.MetaContext => "META_CONTEXT",
        NbdOptionReply.ErrUnsup => "ERR_UNSUP",
        NbdOptionReply.ErrPolicy => "ERR_POLICY",
        NbdOptionReply.ErrInvalid => "ERR_INVALID",
        NbdOptionReply.ErrPlatform => "ERR_PLATFORM",
        NbdOptionReply.ErrTlsReqd => "ERR_TLS_REQD",
        NbdOptionReply.ErrUnknown => "ERR_UNKNOWN",
        NbdOptionReply.ErrShutdown => "ERR_SHUTDOWN",
        NbdOptionReply.ErrBlockSizeReqd => "ERR_BLOCK_SIZE_REQD",
        NbdOptionReply.ErrTooBig => "ERR_TOO_BIG",
        NbdOptionReply.ErrExtHeaderReqd => "ERR_EXT_HEADER_REQD",
        _ => $"reply type 0x{replyType:x8}",
    };
}
