using Qed.Nbd.Protocol;

namespace Qed.Nbd.Server.Transmission;

/// <summary>Turns what the engine threw into the NBD error a client gets (NBD.md 2.8); nothing the engine throws ends the connection.</summary>
internal static class RequestErrors
{
    // errno values .NET puts in IOException.HResult on Linux for a full disk, an exceeded quota, a file too large.
    private const int Enospc = 28;
    private const int Edquot = 122;
    private const int Efbig = 27;
    private const int WindowsDiskFull = unchecked((int)0x80070070);

    public static uint From(Exception exception) => exception switch
    {
        QedReadOnlyException => NbdError.Perm,
        ArgumentOutOfRangeException => NbdError.Inval,
        ObjectDisposedException or OperationCanceledException => NbdError.Shutdown,
        _ when IsDiskFull(exception) => NbdError.NoSpc,
        _ => NbdError.Io,
    };

    /// <summary>True when the exception, or one it wraps, reports a full disk or quota.</summary>
    public static bool IsDiskFull(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is IOException && exception.HResult is Enospc or Edquot or Efbig or WindowsDiskFull)
            {
                return true;
            }
        }

        return false;
    }
}
